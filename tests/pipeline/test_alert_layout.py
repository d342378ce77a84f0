"""Pieces of the analyst tables: cutting, fitting, id shortening, network words."""

from __future__ import annotations

import pytest

from pipeline.analyst.layout import Column, Step, cut, display_width, fit, render
from pipeline.analyst.render import short_ids
from pipeline.ingest.enrich_config import DEFAULT_HOSTING_AS_ORGS
from pipeline.store.network import TOR_EXIT_AS_ORGS, network_kinds


@pytest.mark.parametrize(("how", "expected"), [
    ("end", "arn:aws:sts::1111…"),
    ("middle", "arn:aws:s…147141c9"),
    ("prefix", "arn:aws:sts::11112"),
    ("auto", "arn:aws:s…147141c9"),
])
def test_cut(how: str, expected: str) -> None:
    arn = "arn:aws:sts::111122223333:assumed-role/app-role/i-06679871c147141c9"
    assert cut(arn, 18, how) == expected  # type: ignore[arg-type]  # the parametrised mode is a str; cut wants its Literal
    assert display_width(expected) == 18
    assert cut("short", 18, how) == "short"  # type: ignore[arg-type]  # the parametrised mode is a str; cut wants its Literal


def test_wide_characters_count_twice() -> None:
    assert display_width("東京") == 4
    assert cut("東京都庁", 5) == "東京…"


def test_fit_follows_the_steps_and_gives_the_rest_to_the_flexible_column() -> None:
    columns = [Column("ID", ["tw-0123456789"], how="prefix"), Column("USER", ["someone@example.com"]),
               Column("N", ["1"]), Column("SUMMARY", ["x" * 100])]
    shown = fit(columns, 40, [Step("USER", 8), Step("ID", 6), Step("N")], flex="SUMMARY", flex_wanted=20)
    assert [(c.header, c.width) for c in shown] == [("ID", 6), ("USER", 8), ("SUMMARY", 22)]
    lines = render(shown, 1, 40).splitlines()
    assert lines == ["ID      USER      SUMMARY", "tw-012  someone…  " + "x" * 21 + "…"]


def test_ids_in_a_summary_are_shortened_but_words_and_addresses_stay() -> None:
    text = ("Refresh token 4b85b3d5-ca4b-4364-a148-d277b023f436 of family 78aaa6ea-54c6-45dd-b512-fe77a3237cc9/portal "
            "from 185.220.101.6 (DE, digitalocean-asn); Okta token RT.uXHDAZuNUZ72Ed5RnsmJ at 2026-11-09T08:51:00Z")
    assert short_ids(text) == ("Refresh token 4b85b3d5… of family 78aaa6ea…/portal from 185.220.101.6 "
                               "(DE, digitalocean-asn); Okta token RT.uXHDAZuN… at 2026-11-09T08:51:00Z")


def test_tor_exit_operators_are_hosting_networks_too() -> None:
    assert set(TOR_EXIT_AS_ORGS) <= set(DEFAULT_HOSTING_AS_ORGS)


@pytest.mark.parametrize(("doc", "kinds"), [
    ({"source": {"hosting": True, "as": {"organization": {"name": "STIFTUNG ERNEUERBARE FREIHEIT"}}}},
     ["hosting/VPN/Tor network", "Tor exit"]),
    ({"source": {"net_class": "reputation", "net_list": "tor-exits"}}, ["reputation list tor-exits", "Tor exit"]),
    ({"source": {"net_class": "relay", "net_list": "private-relay"}}, ["relay egress private-relay"]),
    ({"source": {"hosting": True, "as": {"organization": {"name": "Toronto Hydro Telecom"}}}},
     ["hosting/VPN/Tor network"]),
    ({"source": {"hosting": False}}, []),
])
def test_network_kinds(doc: dict, kinds: list[str]) -> None:
    assert network_kinds(doc) == kinds

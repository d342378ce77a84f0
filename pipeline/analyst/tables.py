"""Small summary tables of the notebooks, where getting the counting right matters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd


def top_counts(columns: Mapping[str, pd.Series], by: Sequence[str] | None = None, n: int = 10) -> pd.DataFrame:
    """How often each value occurs in each of ``columns`` (e.g. ``{"events": events["user"],
    "alerts": alerts["user"]}``), counted over *all* values first, then the top ``n`` ordered by
    the columns ``by`` (default: in the order given; ties by value). Counting before cutting
    means a user among the top by alerts shows their true event count, never a 0 left by a
    join of two top-n lists."""
    counts = pd.DataFrame({name: values.value_counts(dropna=True) for name, values in columns.items()})
    counts = counts.fillna(0).astype("int64")
    order = list(by) if by is not None else list(columns)
    counts.index.name = counts.index.name or "value"
    ranked = counts.reset_index().sort_values([*order, counts.index.name], ascending=[False] * len(order) + [True],
                                              kind="stable")
    return ranked.head(n).set_index(counts.index.name)

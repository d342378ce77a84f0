"""Reading input: untrusted bytes and lines → canonical events (normalise, trust), enriched (geo, AS, egress)."""

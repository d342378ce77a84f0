"""Data contracts: canonical events, alerts, and source-format adapters. No I/O."""

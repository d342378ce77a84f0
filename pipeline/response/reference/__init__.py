"""Reference code for sources: how a gateway seals revocation handles for tokenwatch.

Modules here depend on the standard library and ``cryptography`` only (never on the rest of
tokenwatch), so a gateway team can copy one into its own deployment.
"""

"""Automated response: policy, responders (RFC 7009, IdP adapters, CAEP), execution, audit."""

"""Everything that moves data: reading input, the detection runtime, the service, response,
stores, the analyst's tools and the command line (README "Layout")."""

from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
"""Files shipped with the package: default configuration, the sample stream, egress lists."""

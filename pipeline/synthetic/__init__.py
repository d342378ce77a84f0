"""Synthetic traffic, one vocabulary: the bundled sample, the demo world and the anomaly stream."""

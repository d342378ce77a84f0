"""What analysts read: notebook data access and frames, terminal-safe text."""

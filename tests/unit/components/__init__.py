"""Unit tests of each component (`tradingstack.components`): its declared kinds, its render (golden), and the
decisions taken from its recorded child objects."""

"""parity: stripe geometry and numpy codecs for RAID 0, 1, 5, 6 and 10."""

__all__: list[str] = []

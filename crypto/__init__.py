"""crypto: AES-256-GCM block sealing, key derivation and keyslots."""

__all__: list[str] = []

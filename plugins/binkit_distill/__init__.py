"""First-party distillers for binkit (one module per distiller)."""

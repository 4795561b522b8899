"""Mean log-mel spectrum front end (no training)."""

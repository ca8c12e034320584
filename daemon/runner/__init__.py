"""Runner processes: one child per loaded model, holding one backend, spoken to in NDJSON frames."""

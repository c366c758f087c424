"""A small counter service: HTTP in front, Redis behind, Prometheus metrics out."""

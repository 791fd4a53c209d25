"""`make bench`: speed, cold start, local-API load, training cost and sizes, against the original serving path."""

"""Set-up and demo scripts run by the Makefile."""

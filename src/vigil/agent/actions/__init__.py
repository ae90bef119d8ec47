"""Response actions on the endpoint: verify signed commands, run them, report what happened."""

"""The `vigil` command's groups, one module each; `vigil.cli` assembles them."""

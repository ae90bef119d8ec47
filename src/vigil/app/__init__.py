"""The application layer: one service per area over store ports, shared by the API, the portal and the CLI."""

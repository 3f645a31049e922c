"""HTTP blueprints: parse input, call one service, respond (the request boundary commits)."""

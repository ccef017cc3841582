"""leaderboard of fairbench."""

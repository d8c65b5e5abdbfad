"""Leaderboard building blocks: table formats, the HTML page, papers' reported numbers."""

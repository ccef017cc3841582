"""Dataset plugins and the decoded-image cache."""

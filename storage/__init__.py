"""Where whalescan keeps bytes: atomic local publishing and the per-user cache."""

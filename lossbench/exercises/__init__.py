"""Self-checking exercises for students, and assignment tools for instructors."""

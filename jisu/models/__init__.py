"""Known models, where to fetch them, and the verified cache they are kept in."""

"""Reading users' files (images) and writing outputs atomically."""

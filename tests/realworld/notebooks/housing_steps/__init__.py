"""A helper package beside the notebooks."""

"""slurmsweep launcher: sweep files -> validated spec -> plans -> trials -> submissions."""

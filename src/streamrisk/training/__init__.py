"""`streamrisk train`: a logistic score fitted on a recording, its labels taken from the stream itself."""

"""The `aitm` command line: a thin face over datagen/, pipeline/ and models/."""

"""The paper's experiments: the reproduce harness and its tables, the paper's numbers, inspection
of what z keeps, and the speed benchmark."""

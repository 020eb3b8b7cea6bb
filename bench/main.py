#!/usr/bin/env python3
"""What `bench/run` runs: the benchmark suite (bench/suite.py: skiff beside its baselines) with the
figures of docs/guarantees.md (bench/guarantees.py, beside the host tests that assert them) and the
instruction and syscall counts (bench/instructions.py) as two more scenarios. Both modules are imported here, so neither imports the other back."""

import guarantees
import instructions
import suite

if __name__ == "__main__":
    suite.main(more_scenarios={"instructions": instructions.run, "guarantees": guarantees.run})

"""Hardware cost from the weights themselves: LUTs and adder depth of each layer (``network``), solved by
da4ml behind one adapter (``_da4ml``), cached on disk (``cache``), in worker processes (``solver``).

Importing this package loads neither torch nor the solver: the solver's worker processes import only
what they run."""

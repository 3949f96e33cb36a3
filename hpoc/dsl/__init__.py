"""The .hpo language: grammar (`grammar.lark`), parser (`parse`), syntax tree (`ast`) and
canonical formatter (`format`). Knows nothing about Ray or SLURM; importing `hpoc.dsl.ast`
does not load Lark."""

"""The .hpo language: grammar (`grammar.lark`), parser (`parse`, with `transform` to the
tree, `syntax_errors` and `comments`), syntax tree (`ast`) and canonical formatter
(`format`). Knows nothing about Ray or SLURM; importing `hpoc.dsl.ast` does not load Lark."""

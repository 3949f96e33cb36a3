"""A trainer the language tests name (`trainer:T`); never imported."""


class T:
    pass

"""Data steps the language tests name (`data:Getter`); never imported."""


class Getter:
    pass


class Splitter:
    pass

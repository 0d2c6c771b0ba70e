"""add() in Python: the boundary that costs least, a function in an imported module."""


def add(a: int, b: int) -> int:
    return a + b

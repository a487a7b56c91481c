"""Fixture bodies shared by the test modules."""


def made_then_closed(make, close):
    """The body of a generator fixture: yields a function that calls
    `make(*args, **kwargs)` and returns what it made; when the test ends,
    calls `close(thing)` on everything made, in the order made."""
    made = []

    def tracked(*args, **kwargs):
        thing = make(*args, **kwargs)
        made.append(thing)
        return thing

    yield tracked
    for thing in made:
        close(thing)

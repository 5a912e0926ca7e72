"""The ping loop's judgement: an echo still in flight when ping is stopped is not a loss,
an echo without a reply before later ones were answered is."""

from vzlibvirt.lab.pingloop import Loss


def loss(sent: int, answered: set[int], interval_ms: float = 100) -> Loss:
    return Loss(sent, len(answered), interval_ms, 0.0, (), frozenset(answered))


def test_the_echoes_of_the_last_second_are_not_judged():
    # the CI failure of stop 20: 123 sent, the last one's reply not back at SIGINT
    last_in_flight = loss(123, set(range(1, 123)))
    assert last_in_flight.lost == 1  # ping's own summary
    assert last_in_flight.judged() == 113 and last_in_flight.unanswered() == []


def test_a_gap_among_answered_echoes_is_reported():
    assert loss(123, set(range(1, 124)) - {40, 41}).unanswered() == [40, 41]


def test_an_outage_that_lasts_to_the_end_is_reported():
    assert loss(123, set(range(1, 50))).unanswered() == list(range(50, 114))


def test_the_second_in_flight_follows_the_interval():
    assert loss(1000, set(), interval_ms=10).judged() == 900
    assert loss(5, set()).judged() == 0 and loss(5, set()).unanswered() == []

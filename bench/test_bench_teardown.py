"""teardown: ns per node to free a step's graph (the layered backward graph, ~102k nodes at full
size, forward and backward done in the untimed setup). Setup hands the graph's only reference
to the timed body through a holder, which the body clears; for upstream micrograd, whose graphs
are reference cycles, the body also runs the gc.collect() that actually frees them."""


def test_teardown(make_case, run_case):
    result = run_case(make_case("teardown"))
    assert result["freed"]  # the graph's output is gone after the timed body
    assert result["nodes"] > 0

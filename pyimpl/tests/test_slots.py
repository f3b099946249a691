"""The executor's admission rules as data (runtime/_slots.py): what fits beside the
running tasks and which waiting task starts next (TASK-050..TASK-056). No threads."""

from __future__ import annotations

from refrpc.runtime._slots import SlotBook

ONE = 10000  # one slot, or one unit of a resource, in ten-thousandths
HALF = ONE // 2
GPU = (("gpu", ONE),)


def test_half_cpu_tasks_fit_two_to_a_slot_and_a_third_waits():
    book = SlotBook(ONE)
    assert book.fits(HALF)
    book.take(HALF)
    assert book.fits(HALF)
    book.take(HALF)
    assert not book.fits(HALF) and not book.fits(1)
    assert book.fits(0)  # TASK-051: a task that takes nothing always fits
    book.give(HALF)
    assert book.fits(HALF) and not book.fits(ONE)


def test_ten_tenths_fill_a_slot_exactly():
    book = SlotBook(ONE)
    for _ in range(10):
        assert book.fits(ONE // 10)
        book.take(ONE // 10)
    assert not book.fits(1)


def test_a_task_taking_the_whole_offer_or_more_runs_alone():
    # TASK-052: two CPUs on a one-slot executor start when no CPU task runs, and then
    # nothing that takes CPU starts beside it.
    book = SlotBook(ONE)
    book.take(HALF)
    assert not book.fits(2 * ONE)
    book.give(HALF)
    assert book.fits(2 * ONE)
    book.take(2 * ONE)
    assert not book.fits(1) and book.fits(0)
    book.give(2 * ONE)
    assert book.cpu_used == 0 and book.cpu_holders == 0


def test_an_executor_offering_no_slot_runs_cpu_tasks_one_at_a_time():
    book = SlotBook(0)
    assert book.fits(ONE)
    book.take(ONE)
    assert not book.fits(HALF)


def test_a_resource_the_executor_lacks_can_never_be_held():
    # TASK-053
    book = SlotBook(ONE, {"gpu": ONE})
    assert book.lacking(GPU) == ""
    assert book.lacking((("gpu", 2 * ONE),)) == "gpu"
    assert book.lacking((("tpu", 1),)) == "tpu"
    assert book.lacking((("tpu", 0),)) == ""  # asking for none of it asks for nothing


def test_waiting_tasks_start_in_arrival_order_when_they_fit():
    book = SlotBook(ONE)
    assert book.first_startable([(ONE, ()), (HALF, ())]) == 0
    book.take(HALF)
    assert book.first_startable([(ONE, ()), (HALF, ())]) == -1  # the big one reserves the CPU


def test_a_stream_of_small_tasks_does_not_starve_a_big_one():
    # TASK-055: a half-slot task runs; a whole-slot task waits; the half-slot tasks
    # behind it wait too, though one would fit now.
    book = SlotBook(ONE)
    book.take(HALF)
    assert book.first_startable([(ONE, ()), (HALF, ()), (HALF, ())]) == -1
    book.give(HALF)
    assert book.first_startable([(ONE, ()), (HALF, ()), (HALF, ())]) == 0


def test_a_task_waiting_for_a_resource_does_not_hold_back_others():
    # TASK-055: the gpu is taken; a gpu task waits; a CPU-only task behind it starts,
    # a second gpu task behind it does not.
    book = SlotBook(ONE, {"gpu": ONE})
    book.take(0, GPU)
    assert book.first_startable([(0, GPU), (HALF, ())]) == 1
    assert book.first_startable([(0, GPU), (0, GPU)]) == -1
    # A waiting task that takes CPU and the gpu reserves both.
    assert book.first_startable([(HALF, GPU), (HALF, ())]) == -1


def test_a_task_resuming_from_a_get_goes_before_queued_tasks():
    # TASK-056: entries resuming from a get come first in the order; one that does not
    # fit yet keeps the CPU reserved for itself.
    book = SlotBook(ONE)
    book.take(HALF)
    assert book.first_startable([(ONE, ()), (HALF, ())]) == -1
    book.give(HALF)
    assert book.first_startable([(ONE, ()), (HALF, ())]) == 0


def test_what_is_given_back_is_forgotten():
    book = SlotBook(ONE, {"gpu": 2 * ONE})
    book.take(HALF, GPU)
    book.give(HALF, GPU)
    assert book.used == {} and book.cpu_used == 0 and book.cpu_holders == 0

"""What a copy of a Value keeps besides its numbers and label (both engines' ``__reduce__``)."""
from __future__ import annotations

from types import MemberDescriptorType
from typing import Any, Optional


def with_slots(obj: Any, state: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """state plus the attributes obj holds in the ``__slots__`` of its class and its bases (a
    subclass of Value may declare some; vars() does not see them). None when there are none."""
    for cls in type(obj).__mro__:
        if "__slots__" not in cls.__dict__:
            continue
        # each slot's descriptor sits in the class under the slot's (possibly mangled) name
        for name, slot in cls.__dict__.items():
            if not isinstance(slot, MemberDescriptorType) or name == "__weakref__":
                continue
            try:
                value = slot.__get__(obj, cls)
            except AttributeError:  # a slot never set
                continue
            state = {} if state is None else state
            state[name] = value
    return state

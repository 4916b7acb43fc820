"""Generation engines behind one interface, records and their codec, weight transport and its digest."""

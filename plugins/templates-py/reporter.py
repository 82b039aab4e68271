"""A reporter template: one row, the number of customers. Page through the store with
`store.query_customers` (or let the host summarize with `store.aggregate`) and return typed
columns and rows."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import store
from wit_world.imports import types as t

from rapport_sdk import PluginError, guarded


class WitWorld(wit_world.WitWorld):
    @guarded
    def run(self, params: str) -> t.Report:
        count, cursor = 0, None
        while True:
            try:
                page = store.query_customers("", cursor, 500)
            except Err as e:
                raise PluginError(f"the store refused the query: {e.value}")
            count += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        return t.Report(
            title="Customers",
            columns=[t.ReportColumn(name="customers", type=t.ColumnType.INTEGER)],
            rows=[[t.Cell_Integer(count)]],
            chart=None,
        )

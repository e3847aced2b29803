"""Insurance products as data (issue 12): terms files and their hash (:mod:`.terms`), their evaluation
over an index history (:mod:`.evaluate`), burn analysis (:mod:`.backtest`), basis risk (:mod:`.basis`),
the report (:mod:`.report`) and the catalogue in ``products/`` (:mod:`.catalog`). See docs/products.md."""

"""Pictures, the fifth layer: off-screen matplotlib figures (`figures`), the architecture diagram
(`draw`), parameters and multiply-adds per layer (`charts`), run curves (`plots`), the HTML report
(`report`) and what a trained network learned (`viz`). Diagrams, charts and curves are drawn from
`analyze()` or metrics.jsonl without torch; the renderers compute nothing themselves.
"""

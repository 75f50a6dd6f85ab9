"""What a build's output says to people: the card as Markdown, the terminal report, plots, the HTML
report and the diff of two builds."""

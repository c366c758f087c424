"""What a run leaves behind: progress notifications, reports, (later) audit records."""

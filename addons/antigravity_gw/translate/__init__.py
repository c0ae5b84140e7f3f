"""Pure translation between OpenAI and Gemini shapes: functions and sans-IO stream state machines only."""

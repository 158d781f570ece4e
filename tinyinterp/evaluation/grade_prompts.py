"""The paper's two-turn grading prompts, word for word (the reply parser is :mod:`grade_parsing`).

Texts are copied verbatim from the paper's transcripts (Eldan & Li 2023, "GPT-Eval"; see
``../shared/data/eval-prompts/gpt4_grading_prompt_excerpt.md``), including the paper's own typos
and the artifacts of its PDF-to-text conversion ("the following exercise," without its leading
"In", "student´ s", "gramatically", "con-sistent"): tests compare these strings with the excerpt
file, so any drift is caught. Only the ``[...]`` placeholders of the Instruct transcript are
filled, with the age groups of the completion transcript and the grade line the paper shows.

Turn 1 gives the beginning and the completion separated by ``***`` and asks for an assessment;
turn 2 asks for grades of grammar, creativity, consistency and plot and an age group A–F.
"""

from __future__ import annotations

from tinyinterp.evaluation.grade_parsing import AGE_GROUPS, SCORES

# --- story-completion variant (paper transcript, verbatim; trailing spaces are the paper's) ---
COMPLETION_TURN1_INTRO = (
    "the following exercise, the student is given a beginning of a story. The student needs to complete it into "
    "a full story. The exercise tests the student´ s language abilities and creativity. The symbol *** marks the "
    "separator between the prescribed beginning and the student’s completion: "
)
COMPLETION_TURN1_QUESTION = (
    "Please provide your general assessment about the part written by the student (the one after the *** "
    "symbol). Is it gramatically correct? Is it consistent with the beginning of the story? Pay special attention "
    "to whether the student manages to complete the sentence which is split in the middle by the separator ***. "
)
AGE_GROUPS_TEXT = "A: 3 or under. B: 4-5. C: 6-7. D: 8-9. E: 10-12. F: 13-16. "
COMPLETION_TURN2 = (
    "Now, grade the student’s completion in terms of grammar, creativity, consistency with the story’s beginning "
    "and whether the plot makes sense. Moreover, please provide your best guess of what the age of the student "
    "might be, as reflected from the completion. Choose from possible age groups: " + AGE_GROUPS_TEXT
)
SEPARATOR = "***"

# --- Instruct variant (paper transcript, verbatim around the filled-in [...] placeholders) ---
INSTRUCT_TURN1_HEAD = ("Your task is to evaluate the performance of a student. The student is given the following "
                       "exercise: Write a short story.")
INSTRUCT_WORDS = " The story should contain the words: {words}."
INSTRUCT_SENTENCE = " The story should contain the following sentence: {sentence}."
INSTRUCT_PLOT = " The general plot of the story should be: {summary} (feel free to expand beyond this general plot)."
INSTRUCT_TURN1_TAIL = (" The student wrote the following story: {story} Please provide your general assessment about "
                       "the story written by the student. Is it gramatically correct? Is it con-sistent with the "
                       "requirements in the exercise? ")
GRADE_FORMAT = "Grammar: X/10, Creativity: X/10, Consistency: X/10, Plot: X/10, Age group: X"
INSTRUCT_TURN2 = (
    "Now, grade the story in terms of grammar, creativity, consistency with the instructions and whether the plot "
    "makes sense. Moreover, please provide your best guess of what the age of the student might be, as reflected "
    "from the completion. Choose from possible age groups: " + AGE_GROUPS_TEXT.rstrip() + " Use the following grade "
    "format: " + GRADE_FORMAT + " "
)


GRADE_SCHEMA = {
    "name": "story_grades",
    "schema": {
        "type": "object",
        "properties": {**{s: {"type": "number"} for s in SCORES},
                       "age_group": {"type": "string", "enum": list(AGE_GROUPS)}},
        "required": [*SCORES, "age_group"],
        "additionalProperties": False,
    },
}


def completion_turns(beginning: str, completion: str) -> tuple[str, str]:
    """(turn 1, turn 2) for grading ``completion`` of the story ``beginning``."""
    story = beginning + SEPARATOR + completion
    return COMPLETION_TURN1_INTRO + "\n\n" + story + "\n\n" + COMPLETION_TURN1_QUESTION, COMPLETION_TURN2


def instruct_turns(story: str, words: list[str], sentence: str | None = None,
                   summary: str | None = None) -> tuple[str, str]:
    """(turn 1, turn 2) for grading a story written to Instruct requirements."""
    turn1 = INSTRUCT_TURN1_HEAD
    if words:
        turn1 += INSTRUCT_WORDS.format(words=", ".join(words))
    if sentence:
        turn1 += INSTRUCT_SENTENCE.format(sentence=sentence)
    if summary:
        turn1 += INSTRUCT_PLOT.format(summary=summary)
    return turn1 + INSTRUCT_TURN1_TAIL.format(story=story), INSTRUCT_TURN2

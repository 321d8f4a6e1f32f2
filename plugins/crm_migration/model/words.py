"""Words that are not personal data: company legal forms and the joining words of company names. The company
matcher strips them (crm_migration.matching.similarity.company_key); rehearsals on anonymised data keep them
as they are (crm_migration.source.anonymise), so a masked company still matches as the real one does."""

from __future__ import annotations

import re

LEGAL_FORMS = (r"inc|ltd|llc|plc|gmbh|ag|kg|co|sa|sas|sarl|sl|s\.?a\.?t|s\.?l|s\.?coop|e\.?v|und|and|et|y|fils|cie|"
               r"group|groupe|stiftung|ohg|kgaa|mbh")
LEGAL = re.compile(rf"\b({LEGAL_FORMS})\b\.?")
LEGAL_WORD = re.compile(rf"^({LEGAL_FORMS})$")  # one folded word

"""Reading a study's results back: ranked tables, exports, plots and the HTML report.

`load(path)` accepts a build directory (with plan.json), a plan.json, a spec (compiled in
memory), or an experiment directory (or the storage path above one), and merges shards. Nothing here imports Ray: results are read from files.
"""

from hpoc.results.load import load as load
from hpoc.results.load import load_plan as load_plan
from hpoc.results.model import Metric as Metric
from hpoc.results.model import Results as Results
from hpoc.results.model import ResultsError as ResultsError
from hpoc.results.model import Trial as Trial
from hpoc.results.rank import Ranking as Ranking
from hpoc.results.rank import rank as rank

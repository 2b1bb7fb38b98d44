# Reference values for GlioScope's survival metrics and elastic-net Cox, from R.
#
# Dev-time only (CI reads the JSON this writes, never R). Debian bookworm:
#   apt-get install -y r-base-core r-cran-survival r-cran-pec r-cran-glmnet r-cran-riskregression
#   python scripts/r_reference/export_datasets.py /tmp/rref          # CSVs from scikit-survival
#   Rscript scripts/r_reference/reference.R /tmp/rref tests/data/r_reference.json
# (run from the repository root: the JSON records both scripts' MD5, which the tests check)
#
# Per data set (GBSG2, veterans, WHAS500, each as shipped and "untied", see export_datasets.py):
#   harrell   survival::concordance(Surv(time, event) ~ risk, reverse = TRUE)
#   uno       the same with timewt = "n/G2" (weights 1/G(t-)^2), with ymax = tau (events after tau
#             get weight 0) and without
#   brier     pec::pec of the fixed survival matrix (cens.model = "marginal": Kaplan-Meier
#             censoring weights), at the grid of <name>_times.csv; ibs = pec::crps over
#             [first, last grid time] (pec integrates the Brier curve as a left step function)
#   auc       riskRegression::Score(metrics = "auc", cens.model = "km"): cumulative/dynamic AUC
#             with IPC weights (timeROC is not packaged in Debian; Score computes the same
#             estimator, Blanche et al. 2013)
#   glmnet    elastic-net Cox coefficients (alpha = 0.5, standardize = FALSE) on the standardised
#             design at four lambdas of glmnet's own path (shipped data only): glmnet:::cox.path
#             ("coef") and the legacy Fortran solver glmnet(family = "cox") ("coef_fortran")
suppressMessages({
  library(survival); library(pec); library(riskRegression); library(glmnet); library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
src <- args[1]; out <- args[2]
datasets <- c("gbsg2", "veterans", "whas500")

one <- function(name) {
  d <- read.csv(file.path(src, paste0(name, ".csv")))
  tt <- read.csv(file.path(src, paste0(name, "_times.csv")))$time
  S <- as.matrix(d[, grep("^s[0-9]+$", names(d))])
  tau <- unname(quantile(d$time, 0.8, type = 7))
  res <- list(n = nrow(d), events = sum(d$event), tau = tau, times = tt)
  res$harrell <- unname(concordance(Surv(time, event) ~ risk, data = d, reverse = TRUE)$concordance)
  res$uno_tau <- unname(concordance(Surv(time, event) ~ risk, data = d, reverse = TRUE,
                                    timewt = "n/G2", ymax = tau)$concordance)
  res$uno <- unname(concordance(Surv(time, event) ~ risk, data = d, reverse = TRUE,
                                timewt = "n/G2")$concordance)
  # pec wants the prediction at every evaluation time, and evaluates at 0 as well
  p <- pec(object = list(fixed = cbind(1, S)), formula = Surv(time, event) ~ 1, data = d,
           times = c(0, tt), exact = FALSE, cens.model = "marginal", splitMethod = "none",
           reference = FALSE, verbose = FALSE)
  stopifnot(isTRUE(all.equal(p$time, c(0, tt))))
  res$brier <- unname(p$AppErr$fixed[-1])
  res$ibs <- unname(as.numeric(crps(p, times = max(tt), start = min(tt))))
  marker <- plogis((d$risk - mean(d$risk)) / sd(d$risk))  # a risk in (0, 1), same order and ties
  sc <- Score(list(fixed = matrix(marker, nrow(d), length(tt))), formula = Hist(time, event) ~ 1,
              data = d, times = tt, metrics = "auc", cens.model = "km", null.model = FALSE,
              conf.int = FALSE, summary = NULL)
  res$auc <- sc$AUC$score$AUC[order(sc$AUC$score$times)]
  res
}

coxnet_path <- function(name, alpha = 0.5) {
  d <- read.csv(file.path(src, paste0(name, ".csv")))
  x <- as.matrix(d[, grep("^x[0-9]+$", names(d))])
  y <- Surv(d$time, d$event)
  path <- glmnet(x, y, family = "cox", alpha = alpha, standardize = FALSE)
  lambdas <- path$lambda[c(5, 10, 20, 30)]
  cols <- function(fit) unname(lapply(seq_along(lambdas), function(k) as.numeric(fit$beta[, k])))
  # glmnet's R-level Cox path (IRLS + coordinate descent, Breslow ties; what glmnet >= 4.1 runs
  # for family = cox() and (start, stop] data) and its legacy Fortran solver (family = "cox")
  path_fit <- glmnet:::cox.path(x, y, alpha = alpha, lambda = lambdas, standardize = FALSE,
                                thresh = 1e-14, maxit = 1e7)
  fortran <- glmnet(x, y, family = "cox", alpha = alpha, lambda = lambdas, standardize = FALSE,
                    thresh = 1e-14, maxit = 1e7)
  list(alpha = alpha, lambda = lambdas, coef = cols(path_fit), coef_fortran = cols(fortran))
}

metrics <- list()
for (name in datasets) for (v in c(name, paste0(name, "_untied"))) metrics[[v]] <- one(v)
glm <- list()
for (name in datasets) glm[[name]] <- coxnet_path(name)
pkgs <- c("survival", "pec", "riskRegression", "prodlim", "glmnet", "jsonlite")
result <- list(
  produced_by = "scripts/r_reference/reference.R (inputs: scripts/r_reference/export_datasets.py)",
  r_version = R.version.string,
  packages = setNames(lapply(pkgs, function(p) as.character(packageVersion(p))), pkgs),
  created = format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
  script_md5 = as.list(tools::md5sum(c("scripts/r_reference/reference.R",
                                       "scripts/r_reference/export_datasets.py"))),
  metrics = metrics, glmnet = glm)
writeLines(toJSON(result, digits = NA, auto_unbox = TRUE, pretty = TRUE), out)
cat("wrote", out, "\n")

// CMA-ES strategy parameters (internal): the defaults of Hansen, "The CMA Evolution Strategy: A
// Tutorial" (arXiv:1604.00772, 2016), Table 1, including the negative ("active") recombination
// weights; for the separable variant the learning rates of the covariance matrix are multiplied
// by (n + 2) / 3 as in Ros & Hansen, "A Simple Modification in CMA-ES Achieving Linear Time and
// Space Complexity" (PPSN 2008), and only the positive weights are used. Implemented in
// src/evolve/cmaes_params.cpp.
#pragma once

#include <vector>

namespace shoal::evolve {

struct CmaParameters {
  int n = 0;
  int lambda = 0;               // population size
  int mu = 0;                   // parents: floor(lambda / 2)
  std::vector<double> weights;  // lambda recombination weights; the first mu sum to 1
  double mueff = 0;             // variance effective selection mass of the positive weights
  double c_sigma = 0;           // step-size cumulation
  double d_sigma = 0;           // step-size damping
  double c_c = 0;               // rank-one cumulation
  double c_1 = 0;               // rank-one learning rate
  double c_mu = 0;              // rank-mu learning rate
  double chi_n = 0;             // E||N(0, I)||, approximated as sqrt(n)(1 - 1/(4n) + 1/(21n^2))
  int eigen_interval = 1;       // generations between eigendecompositions
};

// eigen_interval_option 0 picks max(1, floor(1 / (10 n (c_1 + c_mu)))).
CmaParameters cma_parameters(int n, int lambda, bool separable, int eigen_interval_option);

}  // namespace shoal::evolve
